--- Cache object files no build will use: files the cache index no longer
-- names (a build drops unused entries from the index, not their files),
-- damaged objects, temp litter. The cache is safe to delete: safe to drop.
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
