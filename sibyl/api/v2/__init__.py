"""The KServe V2 / Open Inference Protocol, whatever the transport: infer (the steps of one infer call both
ports share: admit, read, resolve the model, decode, score, count), tensors (a call's input tensors, described
the same way by both ports, checked against the work budget and decoded to rows) and messages (the V2 protobuf
messages <-> sibyl: an infer request and response, model metadata, config, repository index, statistics).

The gRPC servicer (api.v2_servicer) and the REST app (api.rest) only read and write their bytes around these.
"""
