--- Two registry entries on one asset root (a hand-merged registry shard):
-- the same files would be packed twice under two identities. An error (it
-- blocks the build) when either entry is included, a warning otherwise.
return {
  id = "duplicate_root",
  class = "structural",
  severity = "error",
  description = "two registry entries share one asset root",
  check = function(ctx)
    local seen = {}
    for _, a in ipairs(ctx:assets()) do
      local first = seen[a.root]
      if first then
        ctx:report{ code = "duplicate_root", asset_id = a.asset_id, path = a.root,
                    severity = (a.included or first.included) and "error" or "warning",
                    message = string.format("%s: registered twice, as %s and %s", a.root,
                                            first.asset_id, a.asset_id) }
      else
        seen[a.root] = a
      end
    end
  end,
}
