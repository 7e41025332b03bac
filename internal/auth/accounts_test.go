package auth

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestAccountsRemembersAnswersBoundedInTimeAndSize(t *testing.T) {
	lookups := 0
	exists := map[string]bool{"alice": true}
	a := NewAccounts(AccountsConfig{Size: 10, TTL: time.Minute}, func(_ context.Context, id string) (bool, error) {
		lookups++
		return exists[id], nil
	})
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		if ok, err := a.Exists(ctx, "alice"); !ok || err != nil {
			t.Fatalf("alice: %v %v", ok, err)
		}
		if ok, _ := a.Exists(ctx, "ghost"); ok {
			t.Fatal("ghost exists")
		}
	}
	if lookups != 2 {
		t.Fatalf("%d lookups for 6 questions about 2 ids; want 2", lookups)
	}
	delete(exists, "alice")
	now = now.Add(time.Minute)
	if ok, _ := a.Exists(ctx, "alice"); ok {
		t.Fatal("a removed account still exists after the TTL")
	}
	for i := range 100 {
		a.Exists(ctx, fmt.Sprint("u", i))
	}
	if n := len(a.entries); n > 10 {
		t.Fatalf("%d entries, bound 10", n)
	}
}
