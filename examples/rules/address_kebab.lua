--- Addresses are lower-case kebab paths: "sprites/hero-idle", never
-- "Sprites/HeroIdle" or "sprites/hero_idle". Game code looks assets up by
-- address; one spelling convention keeps lookups from failing on a
-- case-sensitive file system after working on a case-insensitive one.
local SEGMENT = "^[a-z0-9]+$"

local function kebab(address)
  for segment in address:gmatch("[^/]+") do
    for word in (segment .. "-"):gmatch("(.-)%-") do
      if not word:find(SEGMENT) then return false end
    end
  end
  return true
end

local function suggest(address)
  return (address:gsub("(%l)(%u)", "%1-%2"):gsub("[_%s]+", "-"):lower())
end

return {
  id = "address-kebab",
  class = "hygiene",
  scope = "registered",
  severity = "warning",
  description = "addresses are lower-case kebab paths",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      if not kebab(a.address) then
        ctx:report{ code = "address_not_kebab", asset_id = a.asset_id, path = a.root,
                    message = string.format("address \"%s\" is not a lower-case kebab path "
                                            .. "(try \"%s\")", a.address, suggest(a.address)) }
      end
    end
  end,
}
