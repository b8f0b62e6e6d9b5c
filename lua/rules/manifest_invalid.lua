--- A registered asset whose asset.json is missing or does not validate.
-- The code is the one build blocks with, for a missing manifest too.
return {
  id = "manifest_invalid",
  class = "structural",
  severity = "error",
  description = "the manifest (asset.json) of a registered asset is missing or invalid",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local m, code, msg = ctx:manifest(a.asset_id)
      if not m and (code == "manifest_missing" or code == "manifest_invalid") then
        ctx:report{ code = "manifest_invalid", severity = a.included and "error" or "warning",
                    asset_id = a.asset_id, path = a.root .. "/asset.json", message = msg }
      end
    end
  end,
}
