package conformance

import (
	"time"

	"github.com/loopkernel/loopkernel/sdk"
)

// recDriver records the loop's poll timeouts on a driver (KernelConfig.Driver)
// into the same recSelector the selector binding uses, so the cases that
// check how the loop polls read them the same way.
type recDriver struct {
	sdk.Driver
	rec *recSelector
}

func (r *recDriver) Poll(ready []func(), timeout time.Duration) (int, error) {
	r.rec.mu.Lock()
	r.rec.timeouts = append(r.rec.timeouts, timeout)
	r.rec.mu.Unlock()
	r.rec.waiting.Store(true)
	defer r.rec.waiting.Store(false)
	n, err := r.Driver.Poll(ready, timeout)
	r.rec.lastN.Store(int32(n))
	return n, err
}

// driverWake is the selector a driver-bound recSelector stands on: only
// Wake is used (by the watchdog), and it wakes the driver.
type driverWake struct {
	sdk.Selector
	d sdk.Driver
}

func (w driverWake) Wake() error { return w.d.Wake() }

// recordingDriver builds the case's driver from KernelConfig.Driver,
// wrapped to record its polls.
func (k *kt) recordingDriver() (sdk.Driver, *recSelector) {
	d, err := k.cfg.Driver()
	if err != nil {
		k.Errorf("driver: %v", err)
		k.FailNow()
	}
	rec := &recSelector{Selector: driverWake{d: d}}
	return &recDriver{Driver: d, rec: rec}, rec
}
