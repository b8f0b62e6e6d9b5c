--- A registered asset whose root directory is gone. Blocks the build when
-- the asset is included (build reports the same code); a warning otherwise.
return {
  id = "root_missing",
  class = "structural",
  severity = "error",
  description = "the root directory of a registered asset is missing",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local m, code, msg = ctx:manifest(a.asset_id)
      if not m and code == "root_missing" then
        ctx:report{ code = "root_missing", severity = a.included and "error" or "warning",
                    asset_id = a.asset_id, path = a.root, message = msg }
      end
    end
  end,
}
