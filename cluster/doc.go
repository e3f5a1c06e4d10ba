// Package cluster lets several rtmrec nodes share one Redis (standalone or
// Sentinel) and act as one service (docs/cluster.md). It holds:
//
//   - the node registry: every node writes a heartbeat (state, load, soft
//     capacity, public addresses, ICE port, relay stream) that expires when
//     the node stops writing it; an expired node is dead to the others
//     (registry.go);
//   - cluster-wide session ids: a (tenant, id) pair is claimed atomically
//     before a session exists, released only by its owner, and taken over
//     once the owner is dead (claims.go);
//   - the signaling relay: a node holding a client's WebSocket opens a link
//     to the node where the client's session lives, and RTM messages travel
//     both ways through Redis Streams, in order and exactly once, or the
//     link fails loudly (relay.go, frame.go);
//   - Conn, the forwarding front end: one client connection's router that
//     sends each message to the local core or through a link to the node
//     that serves its session, and places new sessions on a node with room
//     (conn.go).
//
// Nothing in the media or recording path depends on Redis: when Redis is
// unreachable, running sessions go on, Ready reports false (the server
// answers server_busy and /readyz 503), and when it returns the node
// registers again and claims its sessions anew.
//
// The package knows RTM messages (package rtm) and nothing of pion, files
// or HTTP. It asks the session core for what it needs through the Core and
// CoreLink interfaces, declared here.
//
// # Redis keys
//
// All keys start with Config.KeyPrefix (default "rtmrec:"):
//
//	node:<id>            hash {inc, info}: the node's heartbeat, expiring after Config.Expiry
//	nodes                set of node ids (an index; entries whose node key expired are pruned)
//	claim:<n>:<tenant>:<id>  string "<node-id> <incarnation>": who serves session <id> of <tenant> (n = len(tenant))
//	relay:<id>           stream: the frames other nodes send to node <id>
//
// A claim is valid while the node key of its owner exists with the same
// incarnation (a random id drawn at each start), so a node that died or
// restarted loses its claims without anyone deleting them. The scripts
// build key names from values they read, which Redis Cluster forbids;
// standalone Redis and Sentinel are supported, Redis Cluster is not.
package cluster
