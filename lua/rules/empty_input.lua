--- A declared input of zero bytes: usually an export that failed.
return {
  id = "empty_input",
  class = "hygiene",
  severity = "warning",
  description = "a declared input is empty",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      for _, input in ipairs(ctx:inputs(a.asset_id) or {}) do
        if input.exists and input.size == 0 then
          ctx:report{ code = "empty_input", asset_id = a.asset_id, path = input.path,
                      message = input.path .. ": input of " .. a.asset_id .. " is empty" }
        end
      end
    end
  end,
}
