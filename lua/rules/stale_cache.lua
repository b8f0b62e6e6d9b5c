--- Cache entries that can never be used again: damaged objects, objects
-- referring to inputs that are gone or changed, temp litter. Safe to drop.
return {
  id = "stale_cache",
  class = "hygiene",
  severity = "info",
  description = "stale entries in .packer/cache/",
  check = function(ctx)
    for _, e in ipairs(ctx:cache()) do
      ctx:report{ code = "stale_cache_entry", path = e.path,
                  message = e.path .. ": " .. e.reason }
    end
  end,
  fix = function(_, d)
    return { kind = "drop_cache_entry", targets = { d.path },
             description = "drop stale cache entry " .. d.path }
  end,
}
