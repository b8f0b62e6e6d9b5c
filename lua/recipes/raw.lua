--- raw: the single input's bytes as they are.
-- Returns ctx:file(1), which tells the runtime to stream the input into the
-- pack without loading it into the sandbox (bounded memory for any size).
return {
  version = "1",
  build = function(ctx)
    if #ctx.inputs ~= 1 then
      error(string.format("raw takes exactly one input, %s has %d", ctx.root, #ctx.inputs), 0)
    end
    return ctx:file(1)
  end,
}
