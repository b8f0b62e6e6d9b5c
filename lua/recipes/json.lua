--- json: the single input parsed and written back canonical and minified
-- (keys sorted, no whitespace). Syntax errors name the input and position.
return {
  version = "1",
  build = function(ctx)
    if #ctx.inputs ~= 1 then
      error(string.format("json takes exactly one input, %s has %d", ctx.root, #ctx.inputs), 0)
    end
    return ctx:json_canonical(1)
  end,
}
