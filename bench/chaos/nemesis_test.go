package chaos

import (
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestScheduleIsSeeded(t *testing.T) {
	a, b := Schedule(42, 2*time.Minute), Schedule(42, 2*time.Minute)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if slices.Equal(a, Schedule(43, 2*time.Minute)) {
		t.Fatal("different seeds gave the same schedule")
	}
}

func TestScheduleShortRunMix(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		plan := Schedule(seed, 2*time.Minute)
		count := map[string]int{}
		var last time.Duration
		for _, p := range plan {
			count[p.Kind]++
			if p.At < last {
				t.Fatalf("seed %d: faults out of order: %v", seed, plan)
			}
			if p.At+p.Hold > 2*time.Minute {
				t.Fatalf("seed %d: fault %v ends after the run", seed, p)
			}
			last = p.At + p.Hold
		}
		if count[KindKillLeader] != 3 || count[KindPause] != 1 || count[KindIsolateLeader]+count[KindSplit] != 1 {
			t.Fatalf("seed %d: CI mix %v", seed, count)
		}
	}
}

func TestScheduleLongRun(t *testing.T) {
	plan := Schedule(7, 30*time.Minute)
	if len(plan) < 80 {
		t.Fatalf("30 minutes planned only %d faults", len(plan))
	}
	kinds := map[string]bool{}
	for _, p := range plan {
		kinds[p.Kind] = true
	}
	for _, k := range faultOrder {
		if !kinds[k] {
			t.Errorf("a 30-minute run never injects %s", k)
		}
	}
}

func TestWritePNG(t *testing.T) {
	h := goodHistory()
	v := Check(h)
	path := filepath.Join(t.TempDir(), "t.png")
	if err := writePNG(path, h, v); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Fatalf("image %v too small to read", b)
	}
}
