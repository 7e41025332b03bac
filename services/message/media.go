package message

import (
	"context"
	"errors"
	"fmt"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/messageapi"
)

// Media checks the bodies of media messages (image, file, audio, video)
// and records which conversations contain which objects (media.Service).
type Media interface {
	Verify(ctx context.Context, user, kind, body string) (*media.Verified, error)
	Reference(ctx context.Context, conv string, v *media.Verified) error
}

// MayRead returns nil when user belongs to conv, messageapi.ErrForbidden
// when not (the media service asks it before handing out a download).
func (s *Service) MayRead(ctx context.Context, user, conv string) error {
	_, err := s.mayRead(ctx, user, conv)
	return err
}

// checkMedia verifies a media send before anything is stored: the object
// exists, is the sender's upload and matches the declared size and type.
// The returned body replaces the sent one (normalised, thumbKey added).
func (s *Service) checkMedia(ctx context.Context, up *messageapi.Upstream) (*media.Verified, error) {
	if !media.IsMedia(up.Kind) {
		return nil, nil
	}
	if s.media == nil {
		return nil, reject(protocol.CodeBadFrame, "%s messages need media storage, which this server does not have", up.Kind)
	}
	v, err := s.media.Verify(ctx, up.User, up.Kind, up.Body)
	var inv *media.Invalid
	if errors.As(err, &inv) {
		return nil, reject(protocol.CodeBadFrame, "%s", inv.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("verify media: %w", err)
	}
	up.Body = v.Body
	return v, nil
}
