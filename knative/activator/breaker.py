"""How many requests a revision may hold waiting for a replica slot, as Knative bounds them.

On a cluster two breakers stand in front of a revision's containers:

- the queue-proxy's, one per pod (`pkg/queue/sharedmain/main.go` buildBreaker): `MaxConcurrency`
  is `containerConcurrency` and `QueueDepth` is 10 × `containerConcurrency`, so the autoscaler has
  time to react; with `containerConcurrency` 0 (unlimited) there is no breaker at all;
- the activator's, one per revision (`pkg/activator/net/throttler.go`): its queue holds at most
  `breakerQueueDepth` = 10000 requests.

A request beyond a full queue gets 503 with the body "pending request queue full"
(`queue.ErrRequestQueueFull`), at once: it never waits. The gateway is activator and every
queue-proxy at once, with one FIFO queue per revision, so that queue holds at most what both
breakers would hold together: while replicas with a `containerConcurrency` are ready, their
queue-proxies' depth, 10 × `containerConcurrency` each (never more than the activator's 10000);
otherwise (no replica ready yet, or no limit) the activator's 10000. Knative writes no
`Retry-After`; the gateway adds one, so clients back off for the autoscaler's next decision rather
than hammer a full queue.

Pure: plain numbers in, numbers and text out.
"""

from __future__ import annotations

# queue-proxy: "the queue depth is equal to the container concurrency * 10 to allow the autoscaler
# time to react" (pkg/queue/sharedmain/main.go)
QUEUE_DEPTH_PER_CONCURRENCY = 10
# activator: breakerQueueDepth (pkg/activator/net/throttler.go), per revision
ACTIVATOR_QUEUE_DEPTH = 10000
# queue.ErrRequestQueueFull's text, which Knative answers with 503
QUEUE_FULL_BODY = "pending request queue full"
# Seconds a rejected client is asked to wait: about one autoscaler tick, after which a panicking
# autoscaler has asked for more replicas (and a deep queue has moved on).
RETRY_AFTER_SECONDS = 1


def queue_depth(
    container_concurrency: int, ready_replicas: int, activator_depth: int = ACTIVATOR_QUEUE_DEPTH
) -> int:
    """The most requests a revision may hold waiting for a replica slot.

    `ready_replicas` replicas take `container_concurrency` requests each (0 = no limit); the
    queue-proxy in front of each holds 10 × that many more, and the activator at most
    `activator_depth` for the whole revision.
    """
    if container_concurrency > 0 and ready_replicas > 0:
        return min(
            activator_depth, QUEUE_DEPTH_PER_CONCURRENCY * container_concurrency * ready_replicas
        )
    return activator_depth


def queue_full_message(
    namespace: str, revision: str, queued: int, container_concurrency: int, ready_replicas: int
) -> str:
    """The 503 body: Knative's words, then which bound was reached and what to do."""
    if container_concurrency > 0 and ready_replicas > 0:
        bound = (
            f"{queued} requests already wait for {ready_replicas} ready replica(s) at "
            f"containerConcurrency={container_concurrency} (the queue-proxy's queue depth is "
            f"{QUEUE_DEPTH_PER_CONCURRENCY} x containerConcurrency per replica)"
        )
    else:
        bound = f"{queued} requests already wait (the activator's queue depth per revision)"
    return (
        f"{QUEUE_FULL_BODY}: Revision {namespace}/{revision} is overloaded: {bound}; retry after "
        f"{RETRY_AFTER_SECONDS}s, or raise containerConcurrency or the revision's max-scale"
    )
