--- No asset over the size budget set in packer.json:
--
--   {"format": 1, ..., "doctor": {"asset_budget_bytes": 4194304,
--                                  "kind_budget_bytes": {"audio": 16777216}}}
--
-- An asset's size is the sum of its inputs. Without a budget in packer.json
-- the rule says nothing.
local function budget_for(config, kind)
  local d = config.doctor
  if type(d) ~= "table" then return nil end
  local per_kind = type(d.kind_budget_bytes) == "table" and d.kind_budget_bytes[kind]
  return math.tointeger(per_kind or d.asset_budget_bytes)
end

return {
  id = "size-budget",
  class = "hygiene",
  scope = "registered",
  severity = "warning",
  description = "assets stay within the size budget from packer.json",
  check = function(ctx)
    local config = ctx:config()
    for _, a in ipairs(ctx:assets()) do
      local m = ctx:manifest(a.asset_id)
      local budget = m and budget_for(config, m.kind)
      if budget then
        local total = 0
        for _, input in ipairs(ctx:inputs(a.asset_id)) do total = total + (input.size or 0) end
        if total > budget then
          ctx:report{ code = "over_budget", asset_id = a.asset_id, path = a.root,
                      message = string.format("%s (%s) is %d bytes, over its budget of %d",
                                              a.address, m.kind, total, budget) }
        end
      end
    end
  end,
}
