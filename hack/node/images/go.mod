// Module nodeimages holds the two tiny static programs hack/node.sh packages as
// container images for the local real node: the pod sandbox ("pause") image and
// a network probe used to check DNS, Services and the host dependencies from
// inside a pod. Standard library only; kept out of the project's main module.
module github.com/imkube/imkube/hack/node/images

go 1.26.0
