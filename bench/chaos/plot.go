package chaos

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"time"
)

// faultColors marks each fault kind on the timeline.
var faultColors = map[string]color.RGBA{
	KindKillLeader:    {220, 40, 40, 255},
	KindPause:         {240, 150, 0, 255},
	KindKillFrontend:  {150, 60, 200, 255},
	KindIsolateLeader: {0, 150, 150, 255},
	KindSplit:         {40, 160, 40, 255},
	KindSlow:          {130, 130, 130, 255},
}

var faultOrder = []string{KindKillLeader, KindPause, KindKillFrontend, KindIsolateLeader, KindSplit, KindSlow}

// writePNG draws the timeline: 250 replies per second as bars, each fault
// as a tinted band from injection to healing with a solid line at its
// start, a legend and the verdict as title.
func writePNG(path string, hist *History, v *Verdict) error {
	const (
		W, H         = 1400, 560
		left, right  = 90, 30
		top, bottom  = 60, 150
		scale        = 2
		plotW, plotH = W - left - right, H - top - bottom
		axisY        = top + plotH
		labelH       = 7 * scale
	)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fillRect(img, 0, 0, W, H, color.White)
	black := color.RGBA{0, 0, 0, 255}
	secs := max(len(v.AcksPerSecond), 1)
	peak := 1
	for _, n := range v.AcksPerSecond {
		peak = max(peak, n)
	}
	xOf := func(t time.Duration) int { return left + int(float64(plotW)*t.Seconds()/float64(secs)) }

	title := fmt.Sprintf("raftmail chaos - acks per second - %s", VerdictLine(v)[len("chaos: "):])
	drawText(img, left, 20, scale, title, black)

	for _, f := range hist.Faults {
		c, ok := faultColors[f.Kind]
		if !ok || f.Skipped != "" {
			continue
		}
		x0, x1 := xOf(f.Start.Sub(hist.Start)), xOf(f.End.Sub(hist.Start))
		blendRect(img, x0, top, max(x1-x0, 2), plotH, c, 60)
		fillRect(img, x0, top, 2, plotH, c)
	}
	barW := max(plotW/secs, 1)
	blue := color.RGBA{30, 80, 200, 255}
	for s, n := range v.AcksPerSecond {
		h := plotH * n / peak
		x := xOf(time.Duration(s) * time.Second)
		fillRect(img, x, axisY-h, max(barW-1, 1), h, blue)
	}
	// Axes, y ticks at 0, half and the peak, x ticks every step seconds.
	fillRect(img, left, top, 2, plotH, black)
	fillRect(img, left, axisY, plotW, 2, black)
	for _, y := range []int{0, peak / 2, peak} {
		py := axisY - plotH*y/peak
		fillRect(img, left-6, py, 6, 2, black)
		lbl := fmt.Sprint(y)
		drawText(img, left-10-textWidth(lbl, scale), py-labelH/2, scale, lbl, black)
	}
	step := 10
	for secs/step > 14 {
		step *= 2
	}
	for s := 0; s <= secs; s += step {
		x := xOf(time.Duration(s) * time.Second)
		fillRect(img, x, axisY, 2, 6, black)
		lbl := fmt.Sprintf("%ds", s)
		drawText(img, x-textWidth(lbl, scale)/2, axisY+12, scale, lbl, black)
	}
	drawText(img, left, axisY+40, scale, "seconds since the workload started; bars: 250 replies per second", black)
	// Legend.
	x, y := left, axisY+75
	for _, k := range faultOrder {
		fillRect(img, x, y, 24, labelH, faultColors[k])
		x = drawText(img, x+32, y, scale, k, black) + 30
	}
	drawText(img, left, y+35, scale, fmt.Sprintf("longest stall %.1fs   leader kill to fresh 250 p99 %.1fs   lost %d duplicated %d",
		v.LongestStall.Seconds(), v.LeaderKillP99.Seconds(), v.Lost, v.Duplicated), black)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
