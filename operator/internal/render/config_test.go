package render

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
)

func TestRenderedConfigIsWhatTheServicesParse(t *testing.T) {
	tests := []struct {
		name string
		give imv1.IMClusterSpec
		want config.Cluster
	}{
		{
			name: "zero spec gives the services' defaults",
			want: config.DefaultCluster(),
		},
		{
			name: "limits and groups are carried over",
			give: imv1.IMClusterSpec{
				Limits: imv1.LimitsSpec{SendRatePerSecond: 3, SendBurst: 9, MaxMessageBytes: 4096, ConnectionsPerIPPerSecond: 7},
				Groups: imv1.GroupsSpec{ReadDiffusionThreshold: 50, MaxMembers: 200},
			},
			want: config.Cluster{
				Limits: config.Limits{SendRatePerSecond: 3, SendBurst: 9, MaxMessageBytes: 4096, ConnectionsPerIPPerSecond: 7},
				Groups: config.Groups{ReadDiffusionThreshold: 50, MaxMembers: 200},
				Media:  config.DefaultMedia(),
				Users:  config.Users{DefaultDMPolicy: "anyone"},
			},
		},
		{
			name: "the default DM policy is carried over",
			give: imv1.IMClusterSpec{Users: imv1.UsersSpec{DefaultDMPolicy: imv1.DMPolicyFriends}},
			want: func() config.Cluster {
				c := config.DefaultCluster()
				c.Users.DefaultDMPolicy = "friends"
				return c
			}(),
		},
		{
			name: "media limits are carried over, unset ones default",
			give: imv1.IMClusterSpec{Media: imv1.MediaSpec{
				Image:             imv1.MediaKindSpec{MaxBytes: 1 << 20, ContentTypes: []string{"image/png"}},
				MaxPendingUploads: 5, OrphanTTL: &metav1.Duration{Duration: 2 * time.Hour}, ThumbnailMaxPixels: 1000,
			}},
			want: func() config.Cluster {
				c := config.DefaultCluster()
				c.Media.Image = config.MediaKind{MaxBytes: 1 << 20, ContentTypes: []string{"image/png"}}
				c.Media.MaxPendingUploads, c.Media.OrphanTTL, c.Media.ThumbnailMaxPixels = 5, config.Duration(2*time.Hour), 1000
				return c
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &imv1.IMCluster{Spec: tt.give}
			got, err := config.ParseCluster([]byte(ConfigJSON(c)))
			if err != nil {
				t.Fatalf("services reject config.json: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config.json = %+v, want %+v", got, tt.want)
			}
			rules, err := flow.ParseRules([]byte(SentinelRulesJSON(c)))
			if err != nil {
				t.Fatalf("services reject sentinel-rules.json: %v", err)
			}
			var sendOK, connectOK bool
			for _, h := range rules.Hotspot {
				switch h.Resource {
				case flow.ResSend:
					sendOK = h.Threshold == int64(tt.want.Limits.SendRatePerSecond) && h.BurstCount == int64(tt.want.Limits.SendBurst)
				case flow.ResConnect:
					connectOK = h.Threshold == int64(tt.want.Limits.ConnectionsPerIPPerSecond)
				}
			}
			if !sendOK || !connectOK {
				t.Errorf("hotspot rules do not carry the limits: %+v", rules.Hotspot)
			}
		})
	}
}
