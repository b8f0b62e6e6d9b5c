--- A directory with an asset.json that is not registered: never built.
return {
  id = "unregistered_root",
  class = "hygiene",
  severity = "warning",
  description = "an asset root exists on disk but is not registered",
  check = function(ctx)
    for _, r in ipairs(ctx:roots()) do
      if not r.asset_id then
        ctx:report{ code = "unregistered_root", path = r.root,
                    message = r.root .. ": asset root is not registered and is never built "
                              .. "(packer register " .. r.root .. ")" }
      end
    end
  end,
}
