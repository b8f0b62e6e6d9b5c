--- A registered asset whose root directory is gone. Blocks the build when
-- the asset is included (build reports the same code); a warning otherwise.
-- When the root was moved inside the workspace, and the directory it went to
-- holds exactly what the asset's last build read, the fix re-points the
-- registry entry there (safe: packer proves the move again before applying).
return {
  id = "root_missing",
  class = "structural",
  severity = "error",
  description = "the root directory of a registered asset is missing",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local m, code, msg = ctx:manifest(a.asset_id)
      if not m and code == "root_missing" then
        local moved = ctx:moved_root(a.asset_id)
        if moved then
          msg = msg .. "; its content is now at " .. moved
        end
        ctx:report{ code = "root_missing", severity = a.included and "error" or "warning",
                    asset_id = a.asset_id, path = a.root, message = msg }
      end
    end
  end,
  fix = function(ctx, d)
    local moved = ctx:moved_root(d.asset_id)
    if moved then
      return { kind = "repoint_root", asset = d.asset_id, targets = { moved },
               description = "re-point " .. d.asset_id .. " from " .. d.path .. " to " .. moved
                             .. " (same manifest and input content)" }
    end
  end,
}
