--- Files inside a registered asset root that no input declares: forgotten
-- inputs, or leftovers. Fix: quarantine them (reversible, needs consent).
return {
  id = "undeclared_file",
  class = "hygiene",
  severity = "info",
  description = "a file in an asset root is not declared as an input",
  check = function(ctx)
    local declared, owner = {}, {}
    for _, a in ipairs(ctx:assets()) do
      owner[a.root] = a.asset_id
      for _, input in ipairs(ctx:inputs(a.asset_id) or {}) do
        if input.path then declared[input.path] = true end
      end
    end
    for _, f in ipairs(ctx:files()) do
      local id = f.root and owner[f.root]
      if id and not declared[f.path] and f.path ~= f.root .. "/asset.json" then
        ctx:report{ code = "undeclared_file", asset_id = id, path = f.path,
                    message = f.path .. ": not declared as an input of " .. id }
      end
    end
  end,
  fix = function(_, d)
    return { kind = "quarantine", targets = { d.path },
             description = "quarantine undeclared " .. d.path }
  end,
}
