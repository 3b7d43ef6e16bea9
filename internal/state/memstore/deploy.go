package memstore

import (
	"context"

	"lbscale/internal/state"
)

// Deploy implements state.Deploys.
func (m *Store) Deploy(context.Context) (state.Deploy, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.deploy == nil {
		return state.Deploy{}, false, nil
	}
	return *m.deploy, true, nil
}

// PutDeploy implements state.Deploys.
func (m *Store) PutDeploy(_ context.Context, d state.Deploy, prev string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := ""
	if m.deploy != nil {
		cur = m.deploy.ID
	}
	if cur != prev {
		return false, nil
	}
	m.deploy = &d
	return true, nil
}
