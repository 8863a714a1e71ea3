"""The data plane inside one revision: a KServe-compatible model server.

Public API (the runtime issue fills it in): ``Model``, the base class of a custom model, and
``serve``, which runs one or more models on the KServe V1, V2 and CloudEvents protocols.
"""
