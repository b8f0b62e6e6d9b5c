--- bundle: several inputs in one blob with a small index.
--
--   "PKBNDL1\0"  u32 count
--   count x { u32 name length, name bytes, u64 offset, u64 size }
--   the inputs' bytes, in declared order
--
-- All integers little-endian; offsets count from the start of the blob.
local MAGIC = "PKBNDL1\0"

return {
  version = "1",
  build = function(ctx)
    local datas, header_size = {}, #MAGIC + 4
    for i, name in ipairs(ctx.inputs) do
      datas[i] = ctx:read(i)
      header_size = header_size + 4 + #name + 16
    end
    local index, offset = { MAGIC, string.pack("<I4", #datas) }, header_size
    for i, name in ipairs(ctx.inputs) do
      index[#index + 1] = string.pack("<s4I8I8", name, offset, #datas[i])
      offset = offset + #datas[i]
    end
    return table.concat(index) .. table.concat(datas)
  end,
}
