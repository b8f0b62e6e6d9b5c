--- A manifest kind with no recipe (built-in or recipes/<kind>.lua), or
-- whose recipe does not load.
return {
  id = "unknown_kind",
  class = "structural",
  severity = "error",
  description = "an asset's kind has no working recipe",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local m = ctx:manifest(a.asset_id)
      if m then
        local ok, code, msg = ctx:recipe(m.kind)
        if not ok then
          ctx:report{ code = code, severity = a.included and "error" or "warning",
                      asset_id = a.asset_id, path = a.root,
                      message = a.root .. ": " .. msg }
        end
      end
    end
  end,
}
