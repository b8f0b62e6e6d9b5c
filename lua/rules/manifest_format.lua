--- A valid manifest that is not in canonical form (sorted keys, two-space
-- indent, trailing newline): noisy diffs. Safe to fix mechanically.
return {
  id = "manifest_format",
  class = "hygiene",
  scope = "registered",
  severity = "info",
  description = "asset.json is valid but not canonically formatted",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      if ctx:manifest_canonical(a.asset_id) == false then
        local path = a.root .. "/asset.json"
        ctx:report{ code = "manifest_not_canonical", asset_id = a.asset_id, path = path,
                    message = path .. ": not in canonical form" }
      end
    end
  end,
  fix = function(_, d)
    return { kind = "rewrite_manifest", targets = { d.path },
             description = "rewrite " .. d.path .. " canonically" }
  end,
}
