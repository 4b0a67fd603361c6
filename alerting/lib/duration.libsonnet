// Prometheus-style durations with a single unit ('90s', '15m', '6h', '30d', '2w') to seconds.
// Only std functions present in jsonnet 0.18 (Debian 12's binary): no std.all/std.any (0.19).
local units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

{
  seconds(duration)::
    local n = std.length(duration);
    local number = std.substr(duration, 0, n - 1);
    local unit = std.substr(duration, n - 1, 1);
    assert n >= 2 && std.objectHas(units, unit)
           && std.length([c for c in std.stringChars(number) if !std.member('0123456789', c)]) == 0
           : 'expected a duration like "30d", got "%s"' % duration;
    std.parseInt(number) * units[unit],
}
