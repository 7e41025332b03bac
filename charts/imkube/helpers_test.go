package chart_test

import (
	"bufio"
	"bytes"
	"strings"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func readerAt(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
