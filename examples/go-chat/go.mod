module wsgate.example/go-chat

go 1.19

require github.com/gorilla/websocket v1.5.0

// Built offline from Debian's golang-github-gorilla-websocket-dev. Elsewhere, delete this line
// and run `go mod tidy` to fetch gorilla/websocket from the module proxy instead.
replace github.com/gorilla/websocket => /usr/share/gocode/src/github.com/gorilla/websocket
