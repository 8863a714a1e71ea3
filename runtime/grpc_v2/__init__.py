"""The Open Inference Protocol's gRPC definition and its generated Python stubs.

`grpc_predict_v2.proto` is KServe's published definition, unchanged; `repository_index.proto`
adds the repository RPC messages Triton's clients use. The `*_pb2*.py` modules are generated from
them by grpcio-tools (`make grpc-stubs`, i.e. `python -m knserve.runtime.grpc_v2.generate`) and
committed, so installing knserve needs no code generator; a test regenerates them and fails when
the committed ones differ.
"""
