package echobench

import "time"

// hist is a latency histogram with 1 µs buckets up to 10 ms and a single
// overflow counter beyond; recording allocates nothing.
type hist struct {
	buckets  [10000]uint32
	overflow []time.Duration
	n        uint64
}

func (h *hist) record(d time.Duration) {
	h.n++
	us := d / time.Microsecond
	if us < time.Duration(len(h.buckets)) {
		h.buckets[us]++
		return
	}
	h.overflow = append(h.overflow, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.buckets {
		h.buckets[i] += c
	}
	h.overflow = append(h.overflow, o.overflow...)
	h.n += o.n
}

// quantile returns the q-quantile (0 < q < 1) to bucket precision.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	var seen uint64
	for i, c := range h.buckets {
		seen += uint64(c)
		if seen > rank {
			return time.Duration(i)*time.Microsecond + time.Microsecond/2
		}
	}
	// In the overflow: find the rank among the slow ones.
	rest := rank - seen
	ov := append([]time.Duration(nil), h.overflow...)
	sortDurations(ov)
	if int(rest) >= len(ov) {
		return ov[len(ov)-1]
	}
	return ov[rest]
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}
