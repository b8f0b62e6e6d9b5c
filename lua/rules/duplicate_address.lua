--- Two included assets with one address: the pack could hold only one.
return {
  id = "duplicate_address",
  class = "structural",
  severity = "error",
  description = "two included assets share an address",
  check = function(ctx)
    local seen = {}
    for _, a in ipairs(ctx:assets()) do
      if a.included then
        local first = seen[a.address]
        if first then
          ctx:report{ code = "duplicate_address", asset_id = a.asset_id, path = a.root,
                      message = string.format(
                        "address \"%s\" is used by included assets %s and %s",
                        a.address, first, a.asset_id) }
        else
          seen[a.address] = a.asset_id
        end
      end
    end
  end,
}
