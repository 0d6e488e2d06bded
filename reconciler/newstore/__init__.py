"""The NewStore adapter's HTTP layer: one module per responsibility.

    problem     reading NewStore's answers: request ids, problem+json details, Retry-After,
                secret scrubbing
    transport   classification tables for transport errors and status codes; TLS contexts
    limiter     HostLimiter: per-host pauses after a 429, concurrency slots
    auth        the OAuth2 client-credentials flow (`ClientCredentials`)
    retries     the retry policy: backoff, attempts and the time budget
    client      NewStoreClient: all HTTP traffic to one environment's tenant
    probe       the webhook-probe gate

Nothing here imports the settings, the core or the CLI: the secrets to scrub come from the
caller.
"""
