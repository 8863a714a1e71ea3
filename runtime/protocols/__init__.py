"""Wire protocols of the model server: KServe V1, the V2 Open Inference Protocol, CloudEvents."""
