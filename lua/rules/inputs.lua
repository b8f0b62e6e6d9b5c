--- Declared inputs that are missing, or that leave the workspace (by "..",
-- an absolute path, or a symlink - of the input or of the root - that
-- resolves outside).
return {
  id = "inputs",
  class = "structural",
  severity = "error",
  description = "a declared input is missing or escapes the workspace",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local sev = a.included and "error" or "warning"
      for _, input in ipairs(ctx:inputs(a.asset_id) or {}) do
        if input.escapes then
          ctx:report{ code = "input_escapes_workspace", severity = sev, asset_id = a.asset_id,
                      path = a.root, message = input.message }
        elseif not input.exists then
          ctx:report{ code = "input_missing", severity = sev, asset_id = a.asset_id,
                      path = input.path, message = input.message }
        end
      end
    end
  end,
}
