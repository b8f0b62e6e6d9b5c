--- Identical contents in several asset files (size, then XXH3): advisory.
return {
  id = "duplicate_content",
  class = "hygiene",
  severity = "info",
  description = "several files in asset roots have identical content",
  check = function(ctx)
    for _, g in ipairs(ctx:duplicates()) do
      ctx:report{ code = "duplicate_content", path = g.paths[1],
                  message = string.format("%d files have identical content (%d bytes, %s): %s",
                                          #g.paths, g.size, g.hash:sub(1, 16),
                                          table.concat(g.paths, ", ")) }
    end
  end,
}
