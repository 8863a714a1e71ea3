"""KServe's InferenceGraph router (≈ KServe's cmd/router): the graph's nodes (`nodes`), the
GJSON conditions (`gjson`), the HTTP app (`app`) and knserve's async chains (`chain`)."""
