package gateway

import (
	"strconv"

	"github.com/gorilla/websocket"
)

// Disconnect is why a connection ended: the WebSocket close code and reason
// the server sends (when the socket can still take a close frame), also the
// label of the imkube_gateway_disconnects metric and of the logs.
type Disconnect struct {
	// Code is the WebSocket close code.
	Code int
	// Reason is the close frame's reason text and the metrics label.
	Reason string
}

func (d Disconnect) Error() string {
	return "gateway: disconnect " + d.Reason + " (close code " + strconv.Itoa(d.Code) + ")"
}

// The reasons a connection ends. Clients and dashboards see these strings:
// keep them stable.
var (
	// DisconnectClientClosed: the client closed the connection.
	DisconnectClientClosed = Disconnect{Code: websocket.CloseNormalClosure, Reason: "client_closed"}
	// DisconnectReadError: reading from the socket failed.
	DisconnectReadError = Disconnect{Code: websocket.CloseNormalClosure, Reason: "read_error"}
	// DisconnectWriteError: writing to the socket failed or timed out.
	DisconnectWriteError = Disconnect{Code: websocket.CloseNormalClosure, Reason: "write_error"}
	// DisconnectSlowConsumer: the outgoing queue outgrew Config.SendQueueBytes;
	// what is still queued is dropped.
	DisconnectSlowConsumer = Disconnect{Code: websocket.CloseNormalClosure, Reason: "slow_consumer"}
	// DisconnectKicked: the same user and device connected again (here or on
	// another gateway); the client gets kicked{reason:"replaced"} first.
	DisconnectKicked = Disconnect{Code: websocket.CloseNormalClosure, Reason: "replaced"}
	// DisconnectRevoked: the token or session the connection authenticated
	// with was revoked (logout, password change, session signed out,
	// account deleted); the client gets kicked{reason} naming which first.
	DisconnectRevoked = Disconnect{Code: websocket.CloseNormalClosure, Reason: "revoked"}
	// DisconnectAuthFailed: the first frame was not a valid auth frame.
	DisconnectAuthFailed = Disconnect{Code: websocket.CloseNormalClosure, Reason: "auth_failed"}
	// DisconnectAuthTimeout: no auth frame within Config.AuthTimeout.
	DisconnectAuthTimeout = Disconnect{Code: websocket.CloseNormalClosure, Reason: "auth_timeout"}
	// DisconnectIdle: nothing read, not even a pong, within Config.IdleTimeout.
	DisconnectIdle = Disconnect{Code: websocket.CloseNormalClosure, Reason: "idle_timeout"}
	// DisconnectTooLarge: a frame over Config.MaxFrameBytes. The WebSocket
	// library has already sent close 1009 (message too big) by the time the
	// gateway sees it.
	DisconnectTooLarge = Disconnect{Code: websocket.CloseMessageTooBig, Reason: "frame_too_large"}
	// DisconnectBadFrames: Config.MaxBadFrames invalid frames in a row.
	DisconnectBadFrames = Disconnect{Code: websocket.CloseNormalClosure, Reason: "protocol_abuse"}
	// DisconnectTokenExpired: the token the connection authenticated with is
	// about to expire; the client gets reauth first, refreshes the token and
	// reconnects.
	DisconnectTokenExpired = Disconnect{Code: websocket.CloseNormalClosure, Reason: "token_expired"}
	// DisconnectShutdown: the gateway is draining (the client gets
	// reconnect{afterMs} first), or it could not load the client's inbox
	// state at auth (the client gets UNAVAILABLE and reconnects).
	DisconnectShutdown = Disconnect{Code: websocket.CloseNormalClosure, Reason: "shutdown"}
)
