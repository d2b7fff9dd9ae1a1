# Debian's Sidekiq 6.4 calls Debian's redis-rb 4.8 the pre-5.0 way, which logs
# a deprecation warning on every fetch (every 2 s per thread).
Redis.silence_deprecations = true
