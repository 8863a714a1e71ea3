"""KServe's controller: InferenceService → Knative Services, its status and its serving runtimes."""
