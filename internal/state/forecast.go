package state

import (
	"context"
	"time"
)

// BucketRate is the pool's mean offered arrival rate over one bucket of
// the learned floor's history.
type BucketRate struct {
	// Start is when the bucket began.
	Start time.Time
	// Rate is the mean arrival rate in it, requests per second.
	Rate float64
}

// Forecasts keeps the pool's arrival-rate history by bucket, the learned
// floor's memory (scaler/forecast). Only the leading scaler writes it.
type Forecasts interface {
	// PutBucketRate records one bucket's rate (replacing any recorded for
	// the same start) and forgets every bucket that began before oldest.
	PutBucketRate(ctx context.Context, r BucketRate, oldest time.Time) error
	// BucketRates returns every recorded bucket, oldest first.
	BucketRates(ctx context.Context) ([]BucketRate, error)
}
