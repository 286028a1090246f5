package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// NewTestDSN creates an empty PostgreSQL database next to the one baseDSN
// (a postgres:// URL) names, and returns its DSN and a func that drops it.
// Tests of several packages can then share one server without seeing each
// other's rows. It lives outside _test files so that other packages' tests
// can call it, and takes no *testing.T so that it keeps package testing out
// of the binary; callers drop the database at cleanup, after closing their
// Stores.
func NewTestDSN(ctx context.Context, baseDSN string) (dsn string, drop func() error, err error) {
	if !strings.HasPrefix(baseDSN, "postgres://") && !strings.HasPrefix(baseDSN, "postgresql://") {
		return "", nil, errors.New("storage: NewTestDSN wants a postgres:// URL")
	}
	u, err := url.Parse(baseDSN)
	if err != nil {
		return "", nil, fmt.Errorf("storage: NewTestDSN: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "kh_test_" + hex.EncodeToString(b[:])

	admin, err := openAdmin(baseDSN)
	if err != nil {
		return "", nil, err
	}
	// CREATE DATABASE takes no parameters; name is ours and plain [a-z0-9_].
	err = admin.WithContext(ctx).Exec("CREATE DATABASE " + name).Error
	closeGorm(admin)
	if err != nil {
		return "", nil, fmt.Errorf("storage: NewTestDSN: create database: %w", err)
	}

	u.Path = "/" + name
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := openAdmin(baseDSN)
		if err != nil {
			return err
		}
		defer closeGorm(admin)
		// FORCE (PostgreSQL 13+) ends connections a test leaked.
		err = admin.WithContext(ctx).Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").Error
		if err != nil {
			err = admin.WithContext(ctx).Exec("DROP DATABASE IF EXISTS " + name).Error
		}
		return err
	}
	return u.String(), drop, nil
}

func openAdmin(dsn string) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard.LogMode(logger.Silent)})
	if err != nil {
		return nil, fmt.Errorf("storage: connect %s: %w", redact(dsn), err)
	}
	return db, nil
}

func closeGorm(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
}

// redact drops the password from a URL DSN for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
