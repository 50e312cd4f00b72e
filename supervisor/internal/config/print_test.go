package config

import "fmt"

func sprint(c *Config) string { return fmt.Sprintf("%v %+v %#v", c, c, c) }
