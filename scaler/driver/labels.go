package driver

// Docker label names: every label the scaler sets or filters on is defined
// here and nowhere else.
const (
	// LabelPool marks a container as a member of a pool. It is the scaler's
	// only licence to touch a container: List filters on it and Stop refuses
	// a container whose value differs.
	LabelPool = "lbscale.pool"
	// LabelRole says what the container is ("web"), for people running
	// docker ps.
	LabelRole = "lbscale.role"
	// LabelCreator is the SCALER_ID of the scaler that created it.
	LabelCreator = "lbscale.created-by"
	// LabelNetwork is the cluster's network (NETWORK) the container or
	// service joined: with several pools, it is what tells one cluster's
	// containers, of every pool, from another's, so that a tear-down
	// (scripts/down, scripts/stack-down) finds them all without knowing the
	// pools.
	LabelNetwork = "lbscale.network"
	// LabelImage is the image reference a container was started from,
	// exactly as given (driver.Spec.Image). A deploy tells old containers
	// from new by it: the engine's own image field may read as an image id
	// or a digest once the tag has moved to another image, and then no
	// longer matches the reference either deploy named.
	LabelImage = "lbscale.image"
)

// RoleWeb is the LabelRole value of web-server containers.
const RoleWeb = "web"

// PoolFilter is the Docker filter value selecting pool's containers.
func PoolFilter(pool string) string { return LabelPool + "=" + pool }
