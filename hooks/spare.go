package hooks

import (
	"context"
	"errors"
	"os"
	"strconv"

	"github.com/containerd/log"
)

// forkPrefix starts the ID of every fork-detected call.
const forkPrefix = "fork-"

// spares is how many ready tool-call cgroups a container keeps, so that a
// short burst of calls is placed without waiting for a cgroup to be made.
const spares = 2

// makeSpare makes a ready cgroup for a detected call, named fork-<n>
// (cgroup v2 cannot rename a cgroup once the program is known; the record's
// command names it), with the tool-call limits applied. A name an exec
// already took is skipped. It takes no lock for the slow part: a held exec
// is placed meanwhile into a spare made earlier.
func (c *Container) makeSpare(ctx context.Context) (string, error) {
	for {
		c.mu.Lock()
		c.seq++
		id := forkPrefix + strconv.FormatUint(c.seq, 10)
		c.mu.Unlock()
		err := c.newCall(id)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("create a tool-call cgroup")
			return "", err
		}
		return id, nil
	}
}

// refill makes spare cgroups up to spares, one refill at a time.
func (c *Container) refill(ctx context.Context) {
	c.placeMu.Lock()
	if c.refilling {
		c.placeMu.Unlock()
		return
	}
	c.refilling = true
	defer func() { c.refilling = false; c.placeMu.Unlock() }()
	for !c.closing && len(c.spare) < spares {
		c.placeMu.Unlock()
		id, err := c.makeSpare(ctx)
		c.placeMu.Lock()
		if err != nil {
			return
		}
		c.spare = append(c.spare, id)
	}
}

// errClosing: the container's teardown has begun, and no call is placed.
var errClosing = errors.New("the container is being deleted")

// takeSpare takes a ready cgroup for a placement, or makes one where calls
// came faster than spares were made. A placement it grants counts in
// c.placing until its call is tracked or it gives up (returnSpare).
func (c *Container) takeSpare(ctx context.Context) (string, error) {
	c.placeMu.Lock()
	if c.closing {
		c.placeMu.Unlock()
		return "", errClosing
	}
	var id string
	if len(c.spare) > 0 {
		id, c.spare = c.spare[0], c.spare[1:]
	}
	c.placing.Add(1)
	c.placeMu.Unlock()
	if id != "" {
		return id, nil
	}
	id, err := c.makeSpare(ctx)
	if err != nil {
		c.placing.Done()
	}
	return id, err
}

// returnSpare gives back the cgroup of a placement that did not happen, and
// ends the placement.
func (c *Container) returnSpare(id string) {
	defer c.placing.Done()
	c.placeMu.Lock()
	keep := len(c.spare) < spares && !c.closing
	if keep {
		c.spare = append(c.spare, id)
	}
	c.placeMu.Unlock()
	if !keep {
		_ = c.removeCall(id)
	}
}
