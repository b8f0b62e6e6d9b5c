--- Quarantined content that the registry still points at: a quarantined
-- asset root still registered, or a quarantined file still declared.
local function under(path, dir)
  return path == dir or path:sub(1, #dir + 1) == dir .. "/"
end

return {
  id = "quarantine_referenced",
  class = "hygiene",
  severity = "warning",
  description = "quarantined content is still referenced by a registered asset",
  check = function(ctx)
    local records = ctx:quarantine()
    if #records == 0 then return end
    for _, a in ipairs(ctx:assets()) do
      for _, r in ipairs(records) do
        if under(a.root, r.original) then
          ctx:report{ code = "quarantined_root", asset_id = a.asset_id, path = a.root,
                      message = string.format("%s is in quarantine as %s but still registered "
                        .. "(packer restore %s, or packer remove %s)", a.root, r.id, r.id,
                        a.asset_id) }
        else
          for _, input in ipairs(ctx:inputs(a.asset_id) or {}) do
            if input.path and under(input.path, r.original) then
              ctx:report{ code = "quarantined_input", asset_id = a.asset_id, path = input.path,
                          message = string.format("%s, an input of %s, is in quarantine as %s",
                                                  input.path, a.asset_id, r.id) }
            end
          end
        end
      end
    end
  end,
}
