package gateway

// DrainDue exposes drainDue to the external tests.
var DrainDue = drainDue
