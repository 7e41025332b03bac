package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // register the PNG decoder
	"io"
)

// ThumbSize is the longest side of a thumbnail in pixels.
const ThumbSize = 320

// ThumbTypes are the content types the platform thumbnails.
var ThumbTypes = map[string]bool{"image/png": true, "image/jpeg": true}

// ErrTooManyPixels: the image is larger than the configured pixel bound
// (a decompression bomb, or just too big to decode safely).
var ErrTooManyPixels = errors.New("media: image has too many pixels to thumbnail")

// ImageConfig reads only the image header: format and dimensions, and
// refuses more than maxPixels pixels before anything is decoded.
func ImageConfig(r io.Reader, maxPixels int64) (image.Config, string, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return cfg, "", fmt.Errorf("media: not a readable PNG or JPEG: %w", err)
	}
	if format != "png" && format != "jpeg" {
		return cfg, format, fmt.Errorf("media: %s images are not thumbnailed", format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return cfg, format, fmt.Errorf("%w: %dx%d, the bound is %d pixels", ErrTooManyPixels, cfg.Width, cfg.Height, maxPixels)
	}
	return cfg, format, nil
}

// Thumbnail decodes a PNG or JPEG of at most maxBytes bytes and maxPixels
// pixels (checked from the header before decoding) and returns a JPEG whose
// longest side is at most ThumbSize.
func Thumbnail(r io.Reader, maxBytes, maxPixels int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("media: image is over %d bytes", maxBytes)
	}
	if _, _, err := ImageConfig(bytes.NewReader(data), maxPixels); err != nil {
		return nil, err
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("media: decode image: %w", err)
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, scale(src, ThumbSize), &jpeg.Options{Quality: 80}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// scale shrinks src to fit max x max with a box filter (average of the
// source pixels under each target pixel), over white for transparency.
func scale(src image.Image, max int) image.Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > max || h > max {
		if w >= h {
			tw, th = max, max*h/w
		} else {
			tw, th = max*w/h, max
		}
	}
	tw, th = maxInt(tw, 1), maxInt(th, 1)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	for y := 0; y < th; y++ {
		y0, y1 := b.Min.Y+y*h/th, b.Min.Y+maxInt((y+1)*h/th, y*h/th+1)
		for x := 0; x < tw; x++ {
			x0, x1 := b.Min.X+x*w/tw, b.Min.X+maxInt((x+1)*w/tw, x*w/tw+1)
			var r, g, bl, n uint64
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					cr, cg, cb, ca := src.At(sx, sy).RGBA()
					// composite over white
					r += uint64(cr + (0xffff - ca))
					g += uint64(cg + (0xffff - ca))
					bl += uint64(cb + (0xffff - ca))
					n++
				}
			}
			dst.Set(x, y, color.RGBA64{R: uint16(r / n), G: uint16(g / n), B: uint16(bl / n), A: 0xffff})
		}
	}
	return dst
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
