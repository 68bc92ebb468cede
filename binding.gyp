{
  "targets": [
    {
      "target_name": "wsgate_relay",
      "sources": ["native/relay.c", "native/inspect.c", "native/frame-tracker.c", "native/watch.c", "native/dial.c", "native/conn.c", "native/accept-key.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
