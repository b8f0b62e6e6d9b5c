--- lua: the single input compiled to stripped Lua 5.4 bytecode. Stripping
-- drops the chunk name and debug info, so the bytes depend only on the
-- source text: the same on any path and any machine of this Lua version.
return {
  version = "1",
  build = function(ctx)
    if #ctx.inputs ~= 1 then
      error(string.format("lua takes exactly one input, %s has %d", ctx.root, #ctx.inputs), 0)
    end
    local fn, err = load(ctx:read(1), "=" .. ctx.inputs[1])
    if not fn then error(err, 0) end
    return string.dump(fn, true)
  end,
}
