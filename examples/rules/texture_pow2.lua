--- Texture inputs must be PNG files whose width and height are powers of
-- two (GPUs without NPOT support, mipmapped atlases). Reads only the first
-- 24 bytes of each PNG: the signature and the IHDR chunk.
--
-- Applies to assets whose manifest says "kind": "texture", or whose options
-- carry "texture": true (so raw-packed textures are checked too).
local SIGNATURE = "\137PNG\r\n\26\n"

local function pow2(n)
  return n > 0 and n & (n - 1) == 0
end

local function is_texture(m)
  return m.kind == "texture" or (m.options and m.options.texture == true)
end

return {
  id = "texture-pow2",
  class = "hygiene",
  scope = "registered",
  severity = "warning",
  description = "texture inputs are PNGs with power-of-two dimensions",
  check = function(ctx)
    for _, a in ipairs(ctx:assets()) do
      local m = ctx:manifest(a.asset_id)
      if m and is_texture(m) then
        for _, input in ipairs(ctx:inputs(a.asset_id)) do
          if input.exists then
            local head = ctx:read(input.path, 24)
            if #head < 24 or head:sub(1, 8) ~= SIGNATURE or head:sub(13, 16) ~= "IHDR" then
              ctx:report{ code = "texture_not_png", asset_id = a.asset_id, path = input.path,
                          message = input.path .. ": not a PNG file" }
            else
              local w, h = string.unpack(">I4I4", head, 17)
              if not (pow2(w) and pow2(h)) then
                ctx:report{ code = "texture_not_pow2", asset_id = a.asset_id, path = input.path,
                            message = string.format("%s: %dx%d is not a power-of-two size",
                                                    input.path, w, h) }
              end
            end
          end
        end
      end
    end
  end,
}
