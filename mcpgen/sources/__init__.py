"""Sources: read each input kind and produce the one IR, a `Catalog`.

`inputs` classifies a build's sources and loads them (protoc for .proto files); `descriptors`
turns file descriptors into the catalog, which the server also does for the types it forwards
(it imports that module alone: nothing here imports protoc's side unless asked); `gomicro` and
`options` read registries and protobuf options.
"""
