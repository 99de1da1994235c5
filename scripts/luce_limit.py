# Infinite-data optimum of the single-Luce choice fit on the didactic population (tabular model, numpy):
# prints KL(p*‖p0) and KL(p*‖π_∞) for pairs drawn from the prior, from uniform and from p*, then a sweep
# over sharpness and prior mix. Referenced by docs/INCLUSIVE.md.
import numpy as np
rng=np.random.default_rng(0)
V,L,M=8,3,3; w=np.array([.5,.3,.2]); sharp=2.0; mix=0.9
s=rng.uniform(0,V,size=L)
def tok(m,l):
    c=s[l]+m*V/M; v=np.arange(V); q=np.exp(sharp*np.cos(2*np.pi*(v-c)/V)); return q/q.sum()
pm=[]
for m in range(M):
    t=np.ones(1)
    for l in range(L): t=np.outer(t,tok(m,l)).ravel()
    pm.append(t)
pm=np.array(pm); pstar=w@pm; R=V**L
p0=mix*pm[0]+(1-mix)/R
kl=lambda p,q:(p*np.log(p/q)).sum()
print('KL(p*|p0)',kl(pstar,p0))
# population pairwise pref matrix
P=(w[:,None,None]*pm[:,:,None]/(pm[:,:,None]+pm[:,None,:])).sum(0)
def fit(q,steps=3000,lr=0.5,r0=None):
    r=np.log(p0) if r0 is None else r0.copy()
    W=np.outer(q,q)
    for _ in range(steps):
        d=r[:,None]-r[None,:]; sg=1/(1+np.exp(-d))
        g=(W*(sg-P)).sum(1)*2  # d/dr_i of loss
        r-=lr*g/W.sum()*R
    pi=np.exp(r-r.max()); pi/=pi.sum(); return pi
for name,q in [('pre',p0),('uniform',np.ones(R)/R),('pstar',pstar)]:
    pi=fit(q); print(name,'KL(p*|pi_inf)',kl(pstar,pi))
# what does luce on p* itself give? P_luce
print('---sweep')
def world(sharp,mix,w):
    pm=[]
    for m in range(M):
        t=np.ones(1)
        for l in range(L):
            c=s[l]+m*V/M; v=np.arange(V); qq=np.exp(sharp*np.cos(2*np.pi*(v-c)/V)); qq/=qq.sum(); t=np.outer(t,qq).ravel()
        pm.append(t)
    pm=np.array(pm); return pm, w@pm, mix*pm[0]+(1-mix)/R
for sharp in [0.5,1.0,1.5,2.0]:
  for mix in [0.9,0.5]:
    pm,pstar,p0=world(sharp,mix,w)
    P=(w[:,None,None]*pm[:,:,None]/(pm[:,:,None]+pm[:,None,:])).sum(0)
    globals()['P']=P; globals()['p0']=p0
    pi_pre=fit(p0); pi_u=fit(np.ones(R)/R)
    # self-consistent: q = pi
    pi=p0
    for it in range(5): pi=fit(0.5*pi+0.5*p0 if it==0 else pi, steps=1500, r0=np.log(pi))
    print(f'sharp {sharp} mix {mix}: prior {kl(pstar,p0):.3f}  luce(q=p0) {kl(pstar,pi_pre):.3f}  luce(unif) {kl(pstar,pi_u):.3f} luce(self) {kl(pstar,pi):.3f}')
