package function

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/client"
)

// explainLoadFailure adds to a node's failed image load (or the inspect
// before it) what to do, when the error alone does not say it: a full
// disk on the node, the load's deadline, a connection to the engine that
// broke mid-request (over SSH, package provision's error says what it saw
// and what to check). Errors a new attempt would not fix (an ID mismatch,
// an archive the engine refuses) and a cancel (the user's) are returned
// as they are, and so is nil.
func explainLoadFailure(err error) error {
	const again = "then run pulse push (or the deploy) again"
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return err
	case strings.Contains(err.Error(), "no space left on device"):
		// ENOSPC reaches us as engine text in the load's stream, not as
		// an API error: matching the words is all there is.
		return fmt.Errorf("%w: the node's disk is full: free space in Docker's data root on it (/var/lib/docker unless data-root says otherwise; `docker system df` shows what uses it, `docker image prune` removes unused images), %s", err, again)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: the node did not finish in time: it may have stopped answering (network, sshd, a frozen or overloaded node): check it, %s", err, again)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w; %s", err, again)
	}
	return err
}
