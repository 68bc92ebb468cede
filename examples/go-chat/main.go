// Command go-chat is a small chat backend for wsgate, the Go twin of examples/node-chat: rooms by
// path (/chat/<room>, or ?room=<room>), each message broadcast to the room's members.
//
//	go-chat --port 9201 [--host 127.0.0.1] [--id go-9201]
//
// It trusts the X-User-Id header, which wsgate sets from the JWT's `sub` claim (forwardClaims)
// after removing any the client sent; so it listens on loopback and must be reachable only through
// wsgate. Every event it sends is one JSON text message naming the backend, so tests and people
// see which backend serves a room (the same events as the Node backend).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const (
	maxMessage = 16 << 10         // a larger message is closed with 1009 by gorilla
	sendQueue  = 64               // messages waiting for a slow member; beyond them it misses messages
	writeWait  = 10 * time.Second // a member that takes longer to take one message is cut
	closeWait  = 2 * time.Second  // on shutdown: how long clients get to answer our close frame
)

var roomName = regexp.MustCompile(`^[\w.-]{1,64}$`)

// event is every message the backend sends; the fields a type does not use stay out of the JSON.
type event struct {
	Type    string  `json:"type"`
	Backend string  `json:"backend"`
	Room    string  `json:"room"`
	User    string  `json:"user"`
	Text    *string `json:"text,omitempty"` // a pointer: an empty message still has its "text"
	Members int     `json:"members,omitempty"`
}

type client struct {
	conn *websocket.Conn
	send chan []byte // gorilla allows one writer per connection: writeLoop, fed through this queue
	room string
	user string
}

type hub struct {
	id      string
	mu      sync.Mutex
	rooms   map[string]map[*client]struct{}
	closing bool
	live    sync.WaitGroup // one per connection, done when its TCP connection is closed
}

var upgrader = websocket.Upgrader{
	// Browsers send the JWT as a subprotocol entry beside a real one; wsgate removes the token, this picks chat.v1.
	Subprotocols: []string{"chat.v1"},
	// wsgate checks Origin (routes[].allowedOrigins); the Host it forwards is not the page's, so gorilla's same-host check would refuse browsers.
	CheckOrigin: func(*http.Request) bool { return true },
}

func main() {
	port := flag.Int("port", 9201, "port to listen on")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	id := flag.String("id", "", "backend id in every event (default go-PORT)")
	flag.Parse()
	if *id == "" {
		*id = fmt.Sprintf("go-%d", *port)
	}
	log.SetOutput(os.Stdout)
	log.SetFlags(0)
	log.SetPrefix(*id + ": ")

	h := &hub{id: *id, rooms: map[string]map[*client]struct{}{}}
	mux := http.NewServeMux()
	// For wsgate's healthCheck (type: http, path: /health).
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", h.upgrade)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", *id, err)
		os.Exit(1)
	}
	log.Printf("listening on %s", ln.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", *id, err)
			os.Exit(1)
		}
	}()
	s := <-signals
	signal.Stop(signals) // a second signal kills at once
	h.shutdown(s, srv)
}

func (h *hub) upgrade(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "a WebSocket endpoint: connect to /chat/<room>", http.StatusUpgradeRequired)
		return
	}
	room := r.URL.Query().Get("room")
	if room == "" {
		room = "lobby"
		if parts := strings.FieldsFunc(r.URL.Path, func(c rune) bool { return c == '/' }); len(parts) > 0 {
			room = parts[len(parts)-1]
		}
	}
	user := r.Header.Get("X-User-Id")
	if user == "" {
		http.Error(w, "no X-User-Id header: connect through wsgate, with a token", http.StatusUnauthorized)
		return
	}
	if !roomName.MatchString(room) {
		http.Error(w, `a room name is 1 to 64 letters, digits, "_", "." or "-"`, http.StatusBadRequest)
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil) // on failure gorilla has answered the request already
	if err != nil {
		return
	}
	c := &client{conn: conn, send: make(chan []byte, sendQueue), room: room, user: user}
	h.live.Add(1)
	go h.writeLoop(c)
	h.join(c)
}

func (h *hub) join(c *client) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "backend shutting down"), time.Now().Add(writeWait))
		close(c.send)
		return
	}
	members := h.rooms[c.room]
	if members == nil {
		members = map[*client]struct{}{}
		h.rooms[c.room] = members
	}
	members[c] = struct{}{}
	c.send <- encode(event{Type: "hello", Backend: h.id, Room: c.room, User: c.user, Members: len(members)})
	h.broadcastLocked(c.room, event{Type: "join", Backend: h.id, Room: c.room, User: c.user}, c)
	log.Printf("%s joined %s (%d here)", c.user, c.room, len(members))
	h.mu.Unlock()
	h.readLoop(c)
}

func (h *hub) readLoop(c *client) {
	c.conn.SetReadLimit(maxMessage)
	closeSent := false
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			h.leave(c, err)
			return
		}
		if closeSent {
			continue // what the client sent before it saw our close
		}
		if kind != websocket.TextMessage {
			c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "text messages only"), time.Now().Add(writeWait))
			// Read on until the client answers the close (ReadMessage then fails), for at most closeWait.
			c.conn.SetReadDeadline(time.Now().Add(closeWait))
			closeSent = true
			continue
		}
		text := string(data)
		h.mu.Lock()
		h.broadcastLocked(c.room, event{Type: "message", Backend: h.id, Room: c.room, User: c.user, Text: &text}, nil)
		h.mu.Unlock()
	}
}

func (h *hub) leave(c *client, err error) {
	h.mu.Lock()
	members := h.rooms[c.room]
	delete(members, c)
	if len(members) == 0 {
		delete(h.rooms, c.room)
	}
	h.broadcastLocked(c.room, event{Type: "leave", Backend: h.id, Room: c.room, User: c.user}, nil)
	close(c.send) // no broadcast reaches c any more: it left the room under the same lock
	h.mu.Unlock()
	// 1001 when the client (or wsgate, for it) went away, 1006 when the connection dropped without a close frame.
	var closed *websocket.CloseError
	if errors.As(err, &closed) {
		log.Printf("%s left %s (%d %s)", c.user, c.room, closed.Code, closed.Text)
	} else {
		log.Printf("%s left %s (%v)", c.user, c.room, err)
	}
}

// broadcastLocked queues the event for every member of the room but `except`; h.mu is held.
func (h *hub) broadcastLocked(room string, e event, except *client) {
	msg := encode(e)
	for member := range h.rooms[room] {
		if member == except {
			continue
		}
		select {
		case member.send <- msg:
		default: // this member is sendQueue messages behind: it misses this one rather than holding up the room
		}
	}
}

func (h *hub) writeLoop(c *client) {
	defer h.live.Done()
	defer c.conn.Close()
	for msg := range c.send {
		c.conn.SetWriteDeadline(time.Now().Add(writeWait))
		if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			// The read loop sees the closed connection and leaves the room, which ends this loop.
			c.conn.Close()
		}
	}
}

// shutdown stops accepting, says goodbye with 1001 (wsgate passes the close frame on, and the client
// reconnects, to another backend if this one is gone) and cuts whoever has not answered within closeWait.
func (h *hub) shutdown(s os.Signal, srv *http.Server) {
	srv.Close() // the listener and plain HTTP connections; upgraded ones are the hub's
	h.mu.Lock()
	h.closing = true
	var all []*client
	for _, members := range h.rooms {
		for c := range members {
			all = append(all, c)
		}
	}
	h.mu.Unlock()
	log.Printf("%v: closing %d connection(s) with 1001", s, len(all))
	goodbye := websocket.FormatCloseMessage(websocket.CloseGoingAway, "backend shutting down")
	for _, c := range all {
		c.conn.WriteControl(websocket.CloseMessage, goodbye, time.Now().Add(closeWait))
	}
	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		for _, c := range all {
			c.conn.Close()
		}
	}
}

func encode(e event) []byte {
	msg, _ := json.Marshal(e) // cannot fail: strings and an int
	return msg
}
