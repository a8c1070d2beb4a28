module github.com/loopkernel/loopkernel

go 1.26
